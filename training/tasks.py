"""Celery tasks of training runs: they take ids, load the row, and call one function.

`run_training` is routed to the `training` queue (CELERY_TASK_ROUTES: `training.tasks.*`);
`recover_stale_runs` runs on the default queue, from beat every minute and when a worker starts,
so it still runs while the training worker is busy.
"""

from celery import shared_task
from celery.signals import worker_ready

from training.execution import TRANSIENT_ERRORS, training_run_execute
from training.services import training_runs_recover_stale


@shared_task(bind=True, name="training.tasks.run_training", max_retries=5)
def run_training(self, run_id: int) -> str:
    """Train the queued run to its end; return its final status.

    Only TRANSIENT_ERRORS (the database unreachable or locked while the run is claimed) are
    retried; everything after that is recorded on the run itself.
    """
    try:
        return training_run_execute(run_id=run_id, task_id=self.request.id).status
    except TRANSIENT_ERRORS as exc:
        raise self.retry(exc=exc, countdown=min(60, 5 * 2**self.request.retries)) from exc


@shared_task(name="training.recover_stale_runs")
def recover_stale_runs() -> list[int]:
    """Mark failed (and maybe requeue) the running runs whose worker stopped beating; return their ids."""
    return [run.pk for run in training_runs_recover_stale()]


@worker_ready.connect
def _recover_when_a_worker_starts(sender=None, **kwargs) -> None:
    """A worker that starts after a crash ends the runs the dead one left 'running'."""
    recover_stale_runs()
