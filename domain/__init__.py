"""The domain: entities, value objects and rules of chatbots. Standard library only."""
