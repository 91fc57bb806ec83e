"""evoagg: multi-tenant time-series aggregation in evolving, verified wasm kernels."""

__version__ = "0.1.0"
