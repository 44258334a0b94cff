"""langfield.codec"""
