"""Metric names shared by the runtime (which emits them) and the monitoring component (which graphs,
alarms and scales on them). Change a name here and both sides follow.
"""

NAMESPACE = "GenAIFleet"

# Dimensions every worker metric carries (EMF dimension sets).
DIM_STACK = "Stack"
DIM_GROUP = "AutoScalingGroupName"
DIM_BACKEND = "Backend"
DIM_TENANT = "Tenant"  # per-tenant spend (issue 42): {Stack, Tenant}
DIM_KIND = "Kind"  # fleet overhead (issue 42): {Stack, Kind} with Kind idle | boot

# Worker agent (per job)
JOB_LATENCY = "JobLatency"              # ms, enqueue -> final record
QUEUE_WAIT = "QueueWait"                # ms, enqueue -> picked up
MODEL_LOAD_TIME = "ModelLoadTime"       # ms
INFERENCE_TIME = "InferenceTime"        # ms
UPLOAD_TIME = "UploadTime"              # ms
JOBS_SUCCEEDED = "JobsSucceeded"        # count
JOBS_FAILED = "JobsFailed"              # count
JOB_ERRORS = "JobErrors"                # count (attempt failed, may be retried)
JOBS_HANDED_BACK = "JobsHandedBack"     # count (visibility reset on drain / interruption)
LEASES_LOST = "LeasesLost"              # count (an attempt fenced out: another attempt owns the job)
DEAD_LETTERS_RECONCILED = "DeadLettersReconciled"  # count (DLQ consumer made a job final)
LEASES_EXPIRED = "LeasesExpired"        # count (sweeper found a dead worker's lease)
MODEL_CACHE_HITS = "ModelCacheHits"     # count
MODEL_CACHE_MISSES = "ModelCacheMisses"  # count
MODEL_RAM_HITS = "ModelRamHits"         # count, model found in the host-RAM tier (hit ratio by tier: dashboard)
MODEL_RAM_MISSES = "ModelRamMisses"     # count, model loaded from the disk cache into the RAM tier
MODEL_DOWNLOAD_BYTES = "ModelDownloadBytes"  # bytes, one model downloaded into the disk cache
MODEL_DOWNLOAD_TIME = "ModelDownloadTime"    # ms, that download (bytes / time = the network's speed)
MODEL_SWITCHES = "ModelSwitches"        # count, a worker's backend changed model (affinity keeps it rare)
MODEL_SWITCH_TIME = "ModelSwitchTime"   # ms, model load time of a job that switched model
BATCH_SIZE = "BatchSize"                # count, jobs in one backend call (dynamic batching; 1 when alone)
SPOT_INTERRUPTIONS = "SpotInterruptions"  # count (notice seen by an agent)
REBALANCE_RECOMMENDATIONS = "RebalanceRecommendations"  # count
BOOT_TO_READY = "BootToReady"           # ms, instance boot -> launching lifecycle action completed
BACKEND_BUSY = "BackendBusy"            # percent of wall time the backend was working
AGENT_HEARTBEAT = "AgentHeartbeat"      # count, one a minute while the agent is healthy
BOOT_WARNINGS = "BootWarnings"          # count, an optional prerequisite missing at boot (property: what)
BOOT_FAILURES = "BootFailures"          # count, a fatal boot error (instance abandoned / marked unhealthy)
CLOCK_OFFSET = "ClockOffset"            # seconds, |AWS's clock - the worker's| from response Date headers
# Fleet overhead (issue 42): instance time outside any attempt, never spread over jobs (property kind: idle | boot)
OVERHEAD_SECONDS = "OverheadSeconds"    # seconds, idle (per window of the busy metric) or boot (once, at ready)
OVERHEAD_COST = "OverheadCost"          # USD, those seconds at the instance's price (runtime.worker.prices)
TENANT_SPEND = "TenantSpend"            # USD of one settled attempt, dimension Tenant (the job's owner)
TENANT_GPU_SECONDS = "TenantGpuSeconds"  # seconds of one settled attempt, dimension Tenant

# Queue backlog published for Kafka (SQS publishes ApproximateNumberOfMessagesVisible itself).
KAFKA_BACKLOG = "KafkaBacklog"          # messages, consumer-group lag summed over partitions

ALL = (JOB_LATENCY, QUEUE_WAIT, MODEL_LOAD_TIME, INFERENCE_TIME, UPLOAD_TIME, JOBS_SUCCEEDED, JOBS_FAILED,
       JOB_ERRORS, JOBS_HANDED_BACK, LEASES_LOST, DEAD_LETTERS_RECONCILED, LEASES_EXPIRED, MODEL_CACHE_HITS,
       MODEL_CACHE_MISSES, SPOT_INTERRUPTIONS, REBALANCE_RECOMMENDATIONS, BOOT_TO_READY, BACKEND_BUSY, KAFKA_BACKLOG,
       AGENT_HEARTBEAT, BOOT_WARNINGS, BOOT_FAILURES, MODEL_RAM_HITS, MODEL_RAM_MISSES, MODEL_DOWNLOAD_BYTES,
       MODEL_DOWNLOAD_TIME, MODEL_SWITCHES, MODEL_SWITCH_TIME, CLOCK_OFFSET, OVERHEAD_SECONDS, OVERHEAD_COST,
       TENANT_SPEND, TENANT_GPU_SECONDS)
