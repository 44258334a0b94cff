"""langfield.features"""
