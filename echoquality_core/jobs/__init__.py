"""Work in other processes: the model process, the training process and its ranks."""
