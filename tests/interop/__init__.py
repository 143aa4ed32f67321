"""Interop harness: Microsoft's Node relay clients driven from pytest (see nodeclients.py)."""
