"""Layout adapters: one module per on-disk layout, each registered in ``runner.data.ADAPTERS``."""
