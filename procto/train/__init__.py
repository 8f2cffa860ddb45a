"""procto.train"""
