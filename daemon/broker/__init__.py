"""Broker adapters: Alpaca (through alpaca-py) and the simulator, behind one Protocol."""
