"""evoagg: multi-tenant time-series aggregation in evolving, verified wasm kernels."""

__version__ = "0.1.0"


def connect(*args: object, **kwargs: object) -> object:
    """``actors.connect(address)``: the control-plane handle (:func:`actors.control.connect`).
    Imported lazily so that ``import actors`` does not start Ray."""
    from actors.control import connect as _connect

    return _connect(*args, **kwargs)  # type: ignore[arg-type]
