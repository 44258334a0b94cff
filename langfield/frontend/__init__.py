"""langfield.frontend"""
