"""Work in other processes: how a child starts (child), which trainer runs (launch), the model process, the training process and its ranks."""
