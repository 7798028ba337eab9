"""An mvmr plug-in package: each module registers one thing through mvmr's public API on import, and the
entry points in pyproject.toml tell mvmr which module to import for which name."""
