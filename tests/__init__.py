"""
Tests for upperecho.
"""
