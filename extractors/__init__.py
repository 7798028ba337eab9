"""Built-in hand-crafted extractors. Each module registers its providers through mvmr's public API on import;
mvmr finds them through the ``mvmr.extractors`` entry points declared in pyproject.toml, as it finds a plug-in's."""
