"""Identical requests in flight share one upstream call, in one process or across replicas."""
