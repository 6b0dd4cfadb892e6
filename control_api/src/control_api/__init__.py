"""Chutes miner control API."""

__version__ = "0.1.0"
