"""The ``conn`` command line. Command modules are imported only when their command runs,
so ``conn --help`` stays fast however many plugins are installed."""
