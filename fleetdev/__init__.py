"""Developer tooling, never installed on an instance: local mode (``fleetdev.local``), the job API's
local HTTP server, the recording Pulumi mocks the offline preview uses, and the in-process worker
harness the benchmarks and integration tests share. The AMI's wheel holds ``runtime`` only.
"""
