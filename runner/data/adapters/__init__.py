"""Layout adapters: one module per on-disk layout, each registered in ``ADAPTERS`` (``_registry``, re-exported
as ``runner.data.ADAPTERS``)."""
