"""langfield.sources"""
