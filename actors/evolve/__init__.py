"""The evolution engine's pure core (no Ray): candidate records, their database, parent
selection and migration, the archive of diverse high performers, and each tenant's git
lineage. Clock and RNG are always passed in, so a run replays exactly from its seed."""
