"""mixedpy in one screen: random intercepts and slopes (sleepstudy) and crossed effects (Penicillin).

Run:  python examples/quickstart.py
"""
import mixedpy as mp

sleep = mp.datasets.load("sleepstudy")
fit = mp.lmer("Reaction ~ Days + (Days | Subject)", sleep)
print(fit.summary())
print()
print("fixef:", mp.fixef(fit).round(3).to_dict())
print("first subjects' coefficients (fixef + ranef):")
print(mp.coef(fit)["Subject"].head(3))
print()

# crossed random effects: every plate meets every sample
penicillin = mp.datasets.load("penicillin")
crossed = mp.lmer("diameter ~ 1 + (1 | plate) + (1 | sample)", penicillin)
print(crossed.summary())
