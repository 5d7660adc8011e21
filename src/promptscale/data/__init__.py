"""SuperGLUE loading, validation, text-to-text formats and the Lightning datamodule."""
