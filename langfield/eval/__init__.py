"""langfield.eval"""
