"""latkit's benchmark scripts, a package: run one as ``python -m benchmarks.NAME`` from the repository root;
shared code is in ``benchmarks.common``. Every figure they print is in benchmarks/RESULTS.md with its command."""
