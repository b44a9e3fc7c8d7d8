"""Trace-driven cluster simulation: request traces, type mapping and the simulator."""
