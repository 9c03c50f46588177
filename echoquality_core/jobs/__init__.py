"""Work in other processes: child start-up, the trainer choice, model and training processes."""
