"""Thin Click modules: parse, call one domain function, print. Imports of heavy
libraries (pydantic, ansible, pyone, jinja2) happen inside the commands."""
