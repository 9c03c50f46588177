"""The Train tab: settings form, starting weights, live plots, the training relay."""
