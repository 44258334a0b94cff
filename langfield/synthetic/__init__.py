"""langfield.synthetic"""
