"""Code that runs in the cloud: the job API (Lambda), the worker agent, backends and queues."""
