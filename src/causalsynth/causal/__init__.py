"""Causal tools over a model program: its graph (read off by provenance tracking), back-door adjustment
sets and estimators, and ground-truth effects from paired worlds.
"""
