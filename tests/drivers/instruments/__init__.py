"""Bench-instrument drivers: protocol replay on pyvisa-sim and physics on the TCP station."""
