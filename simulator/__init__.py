"""Scaling simulator: the autoscaler's own decision function against modelled load, Fargate and cost."""
