"""How statestore backends pass Airflow's ``issubclass`` check, with no import hook.

Airflow's resolver for ``[state_store] backend`` checks ``issubclass(cls, BaseStoreBackend)``
against its own ABC (``airflow._shared.state``; the Task SDK has a copy, ``airflow.sdk._shared.state``).
statestore does not depend on Airflow, so its base cannot subclass them; instead it is registered
as a virtual subclass with ``ABC.register`` (Airflow's public ABC mechanism) whenever statestore
code runs while Airflow is loaded: when a backend class is defined, when a backend class is looked
up by the dotted path Airflow imports (``statestore.s3.S3StoreBackend``, ``statestore.core.LocalStoreBackend``,
…: those names are exported lazily, so Airflow's ``import_string`` always runs this), and when
``load_backend`` loads one. So the check passes whichever of Airflow and statestore was imported
first. Code that holds a statestore class from before Airflow was imported and checks
``issubclass`` itself, before any of those, calls :func:`register_with_airflow` first.

Registration never imports Airflow: outside an Airflow process (``airflow`` not in
``sys.modules``) it does nothing. Airflow's ABCs declare the same eight abstract methods as ours, so
a backend missing one is refused exactly as Airflow refuses any incomplete backend: ``TypeError``
when the resolver instantiates it.
"""

from __future__ import annotations

import importlib
import sys
from abc import ABCMeta

__all__ = ["AIRFLOW_STATE_MODULES", "register_with_airflow"]

AIRFLOW_STATE_MODULES = ("airflow._shared.state", "airflow.sdk._shared.state")
"""Airflow 3.3's modules defining ``BaseStoreBackend`` (the core copy and the Task SDK copy)."""

_registered: set[int] = set()


def register_with_airflow() -> None:
    """Register ``statestore.core.BaseStoreBackend`` with Airflow's ``BaseStoreBackend`` ABCs, if Airflow is loaded.

    Idempotent and cheap (a dictionary lookup) once done; a no-op outside Airflow.
    """
    if "airflow" not in sys.modules or len(_registered) == len(AIRFLOW_STATE_MODULES):
        return
    from statestore.core.base import BaseStoreBackend

    for name in AIRFLOW_STATE_MODULES:
        try:
            module = sys.modules.get(name) or importlib.import_module(name)
        except ImportError:  # an Airflow without this copy (e.g. the Task SDK alone)
            continue
        airflow_base = getattr(module, "BaseStoreBackend", None)
        if isinstance(airflow_base, ABCMeta) and id(airflow_base) not in _registered:
            airflow_base.register(BaseStoreBackend)  # type: ignore[type-abstract]
            _registered.add(id(airflow_base))
