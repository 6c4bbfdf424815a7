"""Op backends: the Backend interface, the registry by modality, one backend per package or module."""
