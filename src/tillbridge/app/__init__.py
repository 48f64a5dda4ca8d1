"""The composition root: the registry of this build, the runtime built from settings and config,
and every job kind of a process. Nothing below this package knows how the parts are assembled."""
