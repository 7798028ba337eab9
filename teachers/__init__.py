"""Built-in frozen teachers. Each module registers its teachers through mvmr's public API on import; mvmr finds
them through the ``mvmr.teachers`` entry points declared in pyproject.toml, as it finds a plug-in's."""
