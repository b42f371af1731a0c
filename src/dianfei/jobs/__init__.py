"""Scheduled jobs (作业): the utility's calendar as data, run by ``dianfei worker``."""
