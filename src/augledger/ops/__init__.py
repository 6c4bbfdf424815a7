"""Op backends. ``image`` wraps Albumentations; it is imported only when a pipeline is compiled."""
