"""Identical requests in flight at once share one upstream call: in one process, or across
replicas."""
