"""langfield.train"""
