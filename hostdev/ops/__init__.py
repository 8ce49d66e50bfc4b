"""The transactions: one undo log each (:mod:`.transaction`), the checks every
operation shares (:mod:`.common`), then one module per operation.
"""
