"""The stack's functions (AWS Lambda), off the workers: every accepted job ends final and tells its webhook.

- ``reconciler``: the jobs DLQ consumer (``dead_letter_handler``) and the lease sweeper (``sweep_handler``).
- ``webhook_events`` / ``webhook_dispatch`` / ``webhooks``: the job table's stream -> deliveries queue ->
  signed POSTs to the receivers (``stream_handler``, ``sender_handler``).
- ``kafka_topics`` / ``kafka_lag``: with ``queueKind: kafka``, the topic creator run by the deployment and
  the lag publisher run every minute (``lambda_handler`` each).

components/job_events.py and components/kafka_functions.py name these handlers and package the files.
Every function makes its AWS clients through ``runtime.functions.environment`` (``runtime.aws_clients``,
profile ``function``) and imports nothing of the worker agent.
"""
