"""A daily maintenance DAG for statestore: clean expired task state with Airflow's own configuration.

Copy this file into Airflow's DAGs folder. The task runs where statestore and its plugins are
installed (any worker), reads ``airflow.cfg`` / ``AIRFLOW__`` settings as every Airflow process does,
and removes what ``state-store --airflow clean`` would: expired task state, the state of inactive
assets, and the worker-side objects that expired rows reference. Airflow's own
``airflow state-store clean`` skips statestore backends, so schedule this (or the cron line in the
README) instead.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from airflow.sdk import dag, task


@dag(
    dag_id="statestore_maintenance",
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["statestore", "maintenance"],
)
def statestore_maintenance() -> None:
    """Clean expired statestore state once a day."""

    @task
    def clean() -> dict[str, Any]:
        """Run statestore's cleanup with Airflow's configuration; the returned counts land in XCom."""
        from statestore.core import StateStore

        result = StateStore.from_config().cleanup()
        print(f"statestore clean: removed {result.removed} entries {dict(result.by_kind)}")
        return {"removed": result.removed, "by_kind": dict(result.by_kind)}

    clean()


statestore_maintenance()
