"""Where augmentation executes: offline materialisation (``materialize``) and online data loading."""
