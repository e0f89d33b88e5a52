"""The delivery worker (a surface: the loop that drives the webhooks delivery library).

``loop``: claiming and delivering; ``recording``: writing attempts in batches; ``setup``: making a
worker from the runtime, standalone or in the web app.
"""

from streamward.worker.loop import DeliveryWorker, WorkerOptions
from streamward.worker.setup import in_process_worker, worker_for

__all__ = ["DeliveryWorker", "WorkerOptions", "in_process_worker", "worker_for"]
