"""The Fargate worker: long-polls the work queue and runs compile / analyze / execute tasks."""
