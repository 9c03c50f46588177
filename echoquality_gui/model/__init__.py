"""The session's model: loading, scoring and GradCAM through the model process."""
