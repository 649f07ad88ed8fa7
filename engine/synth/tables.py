"""Hard-coded population statistics the synthetic generator draws from (research §7).

Everything here is a published figure with its source, or a documented model where the research
has no figure (municipality weights, household sizes 2-7, bank shares).
"""

from __future__ import annotations

import numpy as np

# Basis date of the 2020 benefit (research §1.1), and the windows the generator draws dates from.
BASIS_DAY = int(np.datetime64("2020-04-27", "D").astype(np.int64))
APPLICATIONS_FROM_DAY = int(np.datetime64("2020-05-01", "D").astype(np.int64))
APPLICATIONS_TO_DAY = int(np.datetime64("2020-08-31", "D").astype(np.int64))
LATE_LINK_TO_DAY = int(np.datetime64("2020-09-30", "D").astype(np.int64))
EARLY_LINK_FROM_DAY = int(np.datetime64("2016-01-04", "D").astype(np.int64))
DEATHS_TO_DAY = int(np.datetime64("2021-12-31", "D").astype(np.int64))
NEWBORNS_TO_DAY = int(np.datetime64("2020-12-31", "D").astype(np.int64))
# Mynapoint phase 1 (research §2.2): sign-up from 2020-07-01, points for spend 2020-09-01..2021-12-31.
WALLETS_FROM_DAY = int(np.datetime64("2020-07-01", "D").astype(np.int64))
WINDOW_FROM_DAY = int(np.datetime64("2020-09-01", "D").astype(np.int64))
WINDOW_TO_DAY = int(np.datetime64("2021-12-31", "D").astype(np.int64))
LATE_TRANSACTIONS_TO_DAY = int(np.datetime64("2022-02-28", "D").astype(np.int64))
MICROSECONDS_PER_DAY = 86_400_000_000

# 2020 census population by prefecture, JIS X 0401 code order (research §7.2; source
# kota-tagami/JLSTAT-table:Population/Table/total_prefecture.csv, e-Stat; sum 126,146,099).
PREFECTURE_POPULATION_2020 = {
    "01": 5_224_614, "02": 1_237_984, "03": 1_210_534, "04": 2_301_996, "05": 959_502,
    "06": 1_068_027, "07": 1_833_152, "08": 2_867_009, "09": 1_933_146, "10": 1_939_110,
    "11": 7_344_765, "12": 6_284_480, "13": 14_047_594, "14": 9_237_337, "15": 2_201_272,
    "16": 1_034_814, "17": 1_132_526, "18": 766_863, "19": 809_974, "20": 2_048_011,
    "21": 1_978_742, "22": 3_633_202, "23": 7_542_415, "24": 1_770_254, "25": 1_413_610,
    "26": 2_578_087, "27": 8_837_685, "28": 5_465_002, "29": 1_324_473, "30": 922_584,
    "31": 553_407, "32": 671_126, "33": 1_888_432, "34": 2_799_702, "35": 1_342_059,
    "36": 719_559, "37": 950_244, "38": 1_334_841, "39": 691_527, "40": 5_135_214,
    "41": 811_442, "42": 1_312_317, "43": 1_738_301, "44": 1_123_852, "45": 1_069_576,
    "46": 1_588_256, "47": 1_467_480,
}

# 2020 census, 5-year age bands 0-4 … 80-84, 85+ (research §7.3; source
# kota-tagami/JLSTAT-table:Population/Table/pyramid_total.csv, age-known persons only).
AGE_BANDS_MALE = (
    2_311_189, 2_606_651, 2_742_131, 2_880_029, 3_017_869, 3_074_087, 3_297_031, 3_696_855,
    4_189_446, 4_862_990, 4_277_003, 3_865_303, 3_592_903, 3_910_060, 4_249_286, 3_092_860,
    2_196_093, 1_896_652,
)
AGE_BANDS_FEMALE = (
    2_204_893, 2_482_442, 2_608_386, 2_737_411, 2_913_437, 2_957_877, 3_187_563, 3_614_712,
    4_101_631, 4_787_303, 4_262_848, 3_902_179, 3_704_287, 4_165_208, 4_762_509, 3_838_068,
    3_100_635, 4_124_434,
)
OLDEST_BAND_FROM_AGE = 85
OLDEST_AGE = 105
# 85+ is one band in the census: spread it as 85 + an exponential tail (mean 5 years), cut at 105.
OLDEST_BAND_MEAN_EXTRA_YEARS = 5.0
ADULT_AGE = 18

# Household size shares. The 2020 census gives only 1-person = 38.0% and mean 2.21 (research
# §7.1, §7.4); sizes 2..7 follow the 2010 shape (27.2/18.2/14.4/5.0/1.9/1.0%) shrunk towards
# 2-person households so that the mean is 2.21: 0.38·1 + 0.29·2 + 0.155·3 + 0.115·4 + 0.04·5
# + 0.015·6 + 0.005·7 = 2.21. Households of 7+ are drawn as 7.
HOUSEHOLD_SIZE_SHARES = {1: 0.38, 2: 0.29, 3: 0.155, 4: 0.115, 5: 0.04, 6: 0.015, 7: 0.005}
MEAN_HOUSEHOLD_SIZE = 2.21

# Municipality weights within a prefecture. A model: per-municipality populations are not in the
# research. Average 2020 populations by kind are roughly 1.4M (designated city), 420k (Tokyo
# special ward), 83k (other city), 12k (town/village), hence these relative weights.
DESIGNATED_CITY_WEIGHT = 120.0  # code digits 3-5 in 100..199 (outside Tokyo)
SPECIAL_WARD_WEIGHT = 35.0  # Tokyo 特別区, 131xx
CITY_WEIGHT = 7.0  # 201..299
TOWN_WEIGHT = 1.0  # 301 and up

# Natural deaths after the basis date, until the end of 2021 (~1% of residents, older more likely).
NATURAL_DEATH_SHARE = 0.01
DEATH_HAZARD_YEARS = 10.0  # hazard ∝ exp(age / 10)

# Linked accounts (research §8): ≈52% of residents; minors' accounts must be their own, so rarer.
ADULT_ACCOUNT_SHARE = 0.55
MINOR_ACCOUNT_SHARE = 0.10
LATE_LINK_SHARE = 0.12  # linked after the basis date, up to 2020-09-30
ACCOUNT_TYPE_SHARES = {"1": 0.96, "4": 0.03, "2": 0.01}  # 普通 / 貯蓄 / 当座
# Bank shares. A model: account counts per bank are not in the research. Japan Post Bank and the
# three megabanks hold most personal accounts; other banks get the rest by number of branches.
BANK_SHARES = {"9900": 0.20, "0005": 0.10, "0009": 0.08, "0001": 0.07, "0036": 0.03}
UNKNOWN_BANK_CODE = "9998"
UNKNOWN_BRANCH_CODE = "001"

# Applications (research §1.2): most households without an account on file apply; mail dominates.
APPLY_SHARE = 0.90
MAIL_SHARE = 0.75
APPLY_ANYWAY_SHARE = 0.02  # heads with a linked account who still send an application
DECLINE_SHARE = 0.005  # applications of households of 2+ on which one member opts out

# Mynapoint (research §2.2): 25M wallets for 125M people; 118 services.
ADULT_WALLET_SHARE = 0.22
MINOR_WALLET_SHARE = 0.08
MEAN_TRANSACTIONS_PER_WALLET = 8.0
TRANSACTIONS_DISPERSION = 0.8  # negative binomial shape: small = more skewed
MAX_TRANSACTIONS_PER_WALLET = 300
KIND_MATCHES_SERVICE_SHARE = 0.97
AMOUNT_MEDIAN_YEN = 3_000
AMOUNT_SIGMA = 0.9
AMOUNT_MIN_YEN = 500
AMOUNT_MAX_YEN = 50_000
REFUND_SHARE = 0.02
PARTIAL_REFUND_SHARE = 0.30
REPEATED_REFUND_SHARE = 0.10

# Registered Mynapoint services (research §2.2: 118 service types). Well-known ones first, with
# their funding model; the rest are numbered. (name, kind)
KNOWN_SERVICES = (
    ("PayPay", "prepaid"), ("Suica", "prepaid"), ("WAON", "prepaid"), ("nanaco", "prepaid"),
    ("Rakuten Edy", "prepaid"), ("d Barai", "postpaid"), ("au PAY", "prepaid"),
    ("Rakuten Card", "postpaid"), ("Rakuten Pay", "prepaid"), ("LINE Pay", "prepaid"),
    ("Merpay", "prepaid"), ("PASMO", "prepaid"), ("ICOCA", "prepaid"), ("manaca", "prepaid"),
    ("SMBC Card", "postpaid"), ("JCB Card", "postpaid"), ("MUFG Card", "postpaid"),
    ("Aeon Card", "postpaid"), ("Saison Card", "postpaid"), ("Orico Card", "postpaid"),
    ("Epos Card", "postpaid"), ("View Card", "postpaid"), ("d Card", "postpaid"),
    ("au PAY Card", "postpaid"), ("Kyash", "prepaid"), ("FamiPay", "prepaid"),
    ("Yucho Pay", "prepaid"), ("Toyota Wallet", "prepaid"), ("Smart Code", "prepaid"),
    ("Pixiv Pay", "prepaid"),
)
SERVICE_COUNT = 118
PREPAID_SHARE = 0.60
SERVICE_ZIPF_EXPONENT = 1.1
