"""langfield.render"""
