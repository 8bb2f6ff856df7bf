"""deepnet-plugins-contrib: extra layers, optimizers, regularizers, schedules and callbacks."""
