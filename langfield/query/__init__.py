"""langfield.query"""
